"""The app's error answers and the CLI's reading of them are one mapping, two ways: every error the
app answers with comes back to the CLI as the same error, with what the operator needs from it."""

from __future__ import annotations

import pytest

from upgrade.cli.status import _api_error
from upgrade.errors import (
    Conflict,
    InvalidInput,
    NotAllowed,
    NotFound,
    NotSignedIn,
    PermanentError,
    TemporaryError,
)
from upgrade.triggers.http_common import error_response

ERRORS = [
    (InvalidInput("request", "targetVersion", "not offered: 1.99.0"), 400),
    (NotSignedIn("no signed-in caller"), 401),
    (NotAllowed("needs Upgrade.Approve", code="Upgrade.Approve"), 403),
    (NotFound("no run r-1"), 404),
    (Conflict("the pool has an active run", code="run-1"), 409),
    (PermanentError("the pool is gone"), 422),
]


@pytest.mark.parametrize(("error", "status"), ERRORS, ids=[type(e).__name__ for e, _ in ERRORS])
def test_each_error_the_app_answers_comes_back_to_the_cli_as_itself(error, status):
    # GIVEN the app's answer to an error
    response = error_response(error)
    assert response.status_code == status
    # WHEN the CLI reads it
    read = _api_error(response.status_code, response.get_body())
    # THEN it is the same kind of error, carrying the field, the missing role or the active run
    assert type(read) is type(error)
    assert str(error) in str(read)
    if isinstance(error, InvalidInput):
        assert (read.field, read.problem) == (error.field, error.problem)
    if isinstance(error, NotAllowed | Conflict):
        assert read.code == error.code


def test_an_error_the_app_has_no_status_for_is_a_500_the_cli_reports_with_its_status():
    response = error_response(TemporaryError("the storage account is throttling"))
    read = _api_error(response.status_code, response.get_body())
    assert response.status_code == 500
    assert (type(read), read.status) == (PermanentError, 500)
    assert "throttling" in str(read)
