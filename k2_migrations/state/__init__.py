"""k2-migrate's own state in the migrations database: version record, journal, snapshots, lock."""
