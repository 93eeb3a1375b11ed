// Remember the browser's time zone, so pages show times in it (voiceagents/timezones.py)
// from the next page on; until then they are in the server's zone, which they name.
(function () {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (!zone || document.cookie.split("; ").includes("tz=" + zone)) return;
  document.cookie = "tz=" + zone + "; path=/; max-age=31536000; SameSite=Lax";
})();
