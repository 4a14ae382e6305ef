"""molibackup: creates and rotates AWS EBS snapshots from a YAML configuration."""

__version__ = "0.2.0"
