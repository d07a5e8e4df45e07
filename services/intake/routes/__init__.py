"""The intake API's routes, one router per audience (bureau, towns, civil affairs, finance,
departments), then the reads, bulk intake and operations; app.py includes them all."""
