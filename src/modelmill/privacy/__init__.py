"""Personal data: detectors that find it in columns and free text (``detectors``), used by
``modelmill init``; the policy that drops, hashes, masks, generalises or scrubs it before
training and serving lives beside them."""
