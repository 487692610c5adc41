"""Where ciphertext lives: the database, a directory, or an S3 bucket."""
