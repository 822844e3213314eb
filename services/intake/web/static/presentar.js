// Optional: offer the browser's position on /presentar. The page works without this script.
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
