"""The ``ffcv`` command (`cli`: inspect, verify, convert, bench) and the stage benchmark behind
``ffcv bench`` (`bench`)."""
