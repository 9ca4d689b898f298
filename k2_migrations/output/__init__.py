"""What a run shows: progress on stderr, the summary and the JSON documents."""
