"""The stand-in world: store simulator, recording reader and writer, importers and the scorer."""
