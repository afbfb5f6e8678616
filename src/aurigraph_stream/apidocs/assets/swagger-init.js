// Starts Swagger UI on /q/swagger-ui. Everything it loads is served by this
// server: the bundle, its stylesheet and the OpenAPI document.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: document.body.dataset.openapiUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayRequestDuration: true,
    // The public validator badge would call a third-party service.
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
