// The post-call transcript beside its recording: a click (or Enter) on a line plays the
// recording from there, and the line being played is highlighted.
(function () {
  const player = document.getElementById("recording-player");
  const lines = Array.from(document.querySelectorAll("#post-call-lines [data-start]"));
  if (!player || !lines.length) return;
  const spans = lines.map((line) => [parseFloat(line.dataset.start), parseFloat(line.dataset.end), line]);

  function seek(line) {
    player.currentTime = parseFloat(line.dataset.start);
    player.play().catch(() => {}); // autoplay rules may refuse; the seek still happened
    highlight();
  }
  lines.forEach((line) => {
    line.addEventListener("click", () => seek(line));
    line.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        seek(line);
      }
    });
  });

  let current = null;
  function highlight() {
    const t = player.currentTime;
    const found = spans.find(([start, end]) => t >= start && t < end);
    const line = found ? found[2] : null;
    if (line === current) return;
    if (current) current.classList.remove("playing");
    if (line) line.classList.add("playing");
    current = line;
  }
  player.addEventListener("timeupdate", highlight);
  player.addEventListener("seeked", highlight);
})();
