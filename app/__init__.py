"""emarsys-destination: a Segment destination for Emarsys, on Faust."""

from app.native import use_sources_if_needed

use_sources_if_needed()
