// Front-Channel Logout 1.0: let each app's logout page load, then return to the app.
(function () {
  var link = document.getElementById("continue");
  var frames = Array.prototype.slice.call(document.querySelectorAll("iframe.frontchannel"));
  var left = frames.length;
  function go() { window.location.assign(link.href); }
  frames.forEach(function (f) { f.addEventListener("load", function () { if (--left === 0) go(); }); });
  setTimeout(go, 3000);  // an app that does not answer must not keep the user here
})();
