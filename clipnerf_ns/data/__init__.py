"""Category datasets: procedural objects, mesh renders, and the collection format."""
