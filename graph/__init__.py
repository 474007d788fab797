"""The graph runtime: FINN dataflow graphs run on real images, below both hw_build (verification) and sim."""
