"""The API's JSON parser: DRF's, with every undecodable body reported as a 400."""

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            # Deeply nested arrays/objects (e.g. 100 000 "[") exhaust the decoder's recursion limit.
            # DRF only turns ValueError into a ParseError, so without this they were a 500.
            raise ParseError("JSON parse error - nested too deeply.") from None
