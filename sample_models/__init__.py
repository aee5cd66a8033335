"""Sample models shipped with compress (weights + sidecars); see make.sh for how they were made."""
