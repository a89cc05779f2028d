// The status page's only script (served from the binary; the
// Content-Security-Policy allows no inline script): "check all" for the
// queue table, and a question before a drop. The page works without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
	const all = document.getElementById("check-all");
	if (all) {
		all.addEventListener("change", () => {
			for (const box of document.querySelectorAll('#queue-form input[name="id"]')) {
				box.checked = all.checked;
			}
		});
	}
	for (const b of document.querySelectorAll("button[data-confirm]")) {
		b.addEventListener("click", (e) => {
			if (!window.confirm(b.dataset.confirm)) {
				e.preventDefault();
			}
		});
	}
});
