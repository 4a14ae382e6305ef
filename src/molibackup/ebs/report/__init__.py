"""Read-only views of a job: its snapshots, their sizes and costs, and the report."""
