// Swagger UI's settings (SPECTACULAR_SETTINGS["SWAGGER_UI_SETTINGS"]): a JavaScript object literal that
// drf-spectacular writes into the UI's start-up script, served as a file (/api/docs/?script=) under the CSP.
// The API wants "Authorization: Token <key>", and Swagger sends an apiKey scheme's value as it was pasted:
// a person pastes the key alone. So the prefix is added when it is missing ("Bearer <key>" is read as the
// key too); a value already starting with "Token " is left as it is.
{
  requestInterceptor: (request) => {
    const value = request.headers && request.headers.Authorization;
    if (typeof value === "string" && value.trim() && !/^Token\s/i.test(value.trim())) {
      request.headers.Authorization = "Token " + value.trim().replace(/^Bearer\s+/i, "");
    }
    return request;
  }
}
