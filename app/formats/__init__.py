"""Qt-free annotation readers and writers."""
