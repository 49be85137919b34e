"""The one error shape every API failure answers with, checked the same way everywhere."""


def assert_error_shape(response, status: int, code: str) -> dict:
    """The body, after checking the status, the JSON content type and the shape
    {"success": false, "error": {"code", "message", "details"}} with this code."""
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    assert "Traceback" not in response.content.decode(errors="replace")
    body = response.json()
    assert body["success"] is False
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    return body
