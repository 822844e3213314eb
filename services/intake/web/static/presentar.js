// Optional on /presentar; the page works without this script. It offers the browser's
// position, and shows the juridical person's fields only when the document is a RUC.
(function () {
  "use strict";
  var box = document.querySelector(".posicion");
  if (!box || !navigator.geolocation) return;
  var button = document.getElementById("usar-posicion");
  var status = document.getElementById("estado-posicion");
  var lat = document.getElementById("campo-location-lat");
  var lon = document.getElementById("campo-location-lon");
  box.hidden = false;
  button.addEventListener("click", function () {
    status.textContent = "Buscando su ubicación…";
    navigator.geolocation.getCurrentPosition(
      function (position) {
        lat.value = position.coords.latitude.toFixed(6);
        lon.value = position.coords.longitude.toFixed(6);
        status.textContent = "Se enviará su ubicación actual.";
      },
      function () {
        status.textContent = "No se pudo obtener su ubicación. Indique la dirección.";
      },
      { enableHighAccuracy: false, timeout: 10000 }
    );
  });
})();

(function () {
  "use strict";
  var type = document.getElementById("campo-citizen-id_type");
  var group = document.getElementById("grupo-juridica");
  if (!type || !group) return;
  function inUse() {
    // Never hide what was typed or what carries an error.
    if (group.classList.contains("con-error") || group.querySelector("[aria-invalid]")) return true;
    return Array.prototype.some.call(group.querySelectorAll("input"), function (input) {
      return input.value.trim() !== "";
    });
  }
  function sync() {
    group.hidden = type.value !== "ruc" && !inUse();
  }
  type.addEventListener("change", sync);
  sync();
})();
