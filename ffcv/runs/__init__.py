"""What the training recipes share around their loops: the strict fastargs parser (`config`), run folders,
JSON-lines logs, checkpoints and curves (`run_log`), and stopping on a signal (`stop`)."""
