// The analytics page's two charts, from the figures the server put in #chart-data.
(function () {
  const data = JSON.parse(document.getElementById("chart-data").textContent);
  const stacked = { x: { stacked: true }, y: { stacked: true, beginAtZero: true, ticks: { precision: 0 } } };
  new Chart(document.getElementById("calls-chart"), {
    type: "bar",
    data: {
      labels: data.days,
      datasets: [
        { label: "answered", data: data.answered, backgroundColor: "#18a05a" },
        { label: "not answered", data: data.unanswered, backgroundColor: "#9aa3b5" },
      ],
    },
    options: { animation: false, scales: stacked },
  });
  new Chart(document.getElementById("cost-chart"), {
    type: "line",
    data: { labels: data.days, datasets: [{ label: "US dollars", data: data.cost, borderColor: "#3a6df0" }] },
    options: { animation: false, scales: { y: { beginAtZero: true } } },
  });
})();
