// The theme, set before the page paints. Order: ?theme= in the page URL (forces it, for screenshots),
// then the choice remembered in localStorage, else nothing: the CSS follows prefers-color-scheme.
(function () {
  var KEY = "trajstream-console-theme";
  var forced = new URLSearchParams(location.search).get("theme");
  var chosen = forced === "light" || forced === "dark" ? forced : null;
  if (!chosen) {
    try { chosen = localStorage.getItem(KEY); } catch (e) { chosen = null; }
  }
  if (chosen === "light" || chosen === "dark") document.documentElement.setAttribute("data-theme", chosen);
})();
