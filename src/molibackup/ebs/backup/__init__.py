"""The backup run: select, snapshot (with hooks), rotate, archive and copy."""
