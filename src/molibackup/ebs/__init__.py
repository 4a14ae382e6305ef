"""The EBS core every command shares: the job and its options, where it runs, the tags it
writes, the catalog of its snapshots, the volumes it selects and makes, the blocks it reads.

One package per command family sits on top of it (`backup`, `restore`, `verify`, `report`);
none of them imports another."""
