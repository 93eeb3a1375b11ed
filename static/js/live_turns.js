// Refreshes the transcript of a call in progress. Turns are read from the database, so
// this works whichever web process holds the call's media stream.
(function () {
  const box = document.getElementById("turns");
  const url = box && box.dataset.liveUrl;
  if (!url) return;
  let shown = null;
  async function refresh() {
    let nextInMs = 1000;
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.redirected) {
        // Signed out meanwhile: reloading lets the page itself send us to the login form,
        // instead of the login form landing inside the transcript.
        window.location.reload();
        return;
      }
      if (response.ok) {
        const html = await response.text();
        if (html !== shown) {
          box.innerHTML = html; // only on change, so a reader's text selection survives
          shown = html;
        }
        if (box.querySelector("[data-ended='true']")) {
          window.location.reload(); // show the final duration and reason
          return;
        }
      } else {
        nextInMs = 5000; // a server error or a restart: keep trying, more slowly
      }
    } catch (networkError) {
      nextInMs = 5000;
    }
    setTimeout(refresh, nextInMs);
  }
  setTimeout(refresh, 1000);
})();
