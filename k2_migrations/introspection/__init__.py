"""Reading the live schema: catalog queries on system tables, table shapes and types as the engine names them."""
