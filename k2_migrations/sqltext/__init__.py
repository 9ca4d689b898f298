"""SQL text: tokenizing, reading, rewriting, quoting and rendering ClickHouse statements."""

from k2_migrations.sqltext.cluster import cluster_form, takes_on_cluster
from k2_migrations.sqltext.objects import could_consume_kafka, engine_of, object_kind, view_source_and_target
from k2_migrations.sqltext.references import TableName
from k2_migrations.sqltext.rewrite import rewrite_databases
from k2_migrations.sqltext.tokens import split_statements

__all__ = [
    "TableName",
    "cluster_form",
    "could_consume_kafka",
    "engine_of",
    "object_kind",
    "rewrite_databases",
    "split_statements",
    "takes_on_cluster",
    "view_source_and_target",
]
