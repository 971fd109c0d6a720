"""schemathesis hooks for batchd (scripts/schemathesis.sh loads them)."""

import schemathesis

# The server's refusal of a repeated custom_id (batchd_http::create, as the API words it).
DUPLICATE_CUSTOM_ID = "custom_id's must be unique within a batch"


@schemathesis.hook
def filter_failure(context, failure, case, response):
    """Keeps every failure but "valid data rejected" for a create whose `custom_id`s repeat.

    They must be unique within a batch, and the server refuses a repeat with a 400, as the API
    does. JSON Schema cannot say "unique by this key", so the document cannot either, and the
    generator produces such bodies as valid ones. Only that exact refusal is let through.
    """
    return not (response.status_code == 400 and DUPLICATE_CUSTOM_ID in response.text)
