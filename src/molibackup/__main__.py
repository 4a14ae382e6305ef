from molibackup.cli import entrypoint

entrypoint()
