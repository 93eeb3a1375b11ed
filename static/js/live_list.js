// The call list filtered to calls in progress refreshes itself, so it stays "live now".
(function () {
  const list = document.querySelector("[data-refresh-seconds]");
  if (!list) return;
  setTimeout(() => location.reload(), Number(list.dataset.refreshSeconds) * 1000);
})();
