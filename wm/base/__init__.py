"""The base layer: paths, settings, the database and its queue, media files, atomic writes, log, errors."""
