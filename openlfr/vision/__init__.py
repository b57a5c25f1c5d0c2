"""Stage 1: faces in an image -> boxes, landmarks, quality, embeddings."""
