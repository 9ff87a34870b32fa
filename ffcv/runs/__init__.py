"""What the training recipes share around their loops: the strict fastargs parser (`config`), run folders,
JSON-lines logs and checkpoints (`run_log`), curves.png (`curves`), the start-up line, progress bars and
one-line errors on the terminal (`console`), and stopping on a signal (`stop`)."""
