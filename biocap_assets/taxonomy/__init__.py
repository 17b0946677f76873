"""TreeOfLife-10M catalog reading and the taxa table."""
