"""happysad: from a folder of class folders to a model that classifies new images.

Pipeline modules (data flows one way): images -> clean -> split -> data -> model -> train ->
bundle -> evaluate / predict. The CLI (``happysad``) is a thin shell over them.
"""

__version__ = "0.1.0"
