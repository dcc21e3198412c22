"""What the tests import: the small data they make (`data`), a real server and database (`servers`), a real
browser (`browser`), interrupting and exploring (`training`) and the model-type contract (`contract`)."""
