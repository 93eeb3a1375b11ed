// The agent form: show only the chosen turn-detection mode's settings, and mark the
// chosen model in the price table. Without JavaScript every field stays visible.
(function () {
  const form = document.querySelector("form.agent-form");
  if (!form) return;
  const mode = form.querySelector("[name=turn_detection]");
  const model = form.querySelector("[name=model]");

  function showMode() {
    for (const section of form.querySelectorAll("fieldset[data-turn-detection]")) {
      section.hidden = section.dataset.turnDetection !== mode.value;
    }
  }
  function markModel() {
    let reasoning = false;
    for (const row of form.querySelectorAll("table.models tr[data-model]")) {
      const chosen = row.dataset.model === model.value;
      row.classList.toggle("chosen", chosen);
      if (chosen) reasoning = row.hasAttribute("data-reasoning");
    }
    // Only reasoning models take an effort; keep a wrong one visible so its error shows.
    const effort = form.querySelector("#field-reasoning_effort");
    effort.hidden = !reasoning && !effort.classList.contains("has-error");
  }
  const voice = form.querySelector("[name=voice]");
  const preview = document.getElementById("voice-preview");
  voice.addEventListener("change", () => {
    preview.src = preview.dataset.src.replace("VOICE", voice.value);
  });
  mode.addEventListener("change", showMode);
  model.addEventListener("change", markModel);
  showMode();
  markModel();
})();
