"""Where artifacts live: one storage interface (a local folder or S3) and uploads received
without holding them in memory."""
