// Refreshes the transcript of a call in progress. Turns are read from the database, so
// this works whichever web process holds the call's media stream.
(function () {
  const box = document.getElementById("turns");
  const url = box && box.dataset.liveUrl;
  if (!url) return;
  async function refresh() {
    const response = await fetch(url, { credentials: "same-origin" });
    if (!response.ok) return;
    box.innerHTML = await response.text();
    const ended = box.querySelector("[data-ended='true']");
    if (ended) {
      window.location.reload(); // show the final duration and reason
      return;
    }
    setTimeout(refresh, 1000);
  }
  setTimeout(refresh, 1000);
})();
