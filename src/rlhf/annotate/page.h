// The web pages of `rlhf annotate`: the annotator's page (one pair at a time, chosen with
// buttons or keys) and the admin page (progress, agreement, disagreements). Torch-free.
#pragma once
#include <string_view>

namespace rlhf::annotate {

// The annotation pages, self-contained (no CDN, no external font, no framework), served by
// the annotate server. They hold no data: their script fetches it with the token in the URL
// fragment (#token=...), sent as "Authorization: Bearer TOKEN". Nothing inline (no script,
// style attribute or event handler), so the server's Content-Security-Policy can allow only
// 'self'; every text from the data is put on the page with textContent.
std::string_view annotator_page_html();  // GET /
std::string_view admin_page_html();      // GET /admin
std::string_view page_script();          // GET /static/annotate.js  (both pages; it looks at document.body.dataset.page)
std::string_view page_style();           // GET /static/annotate.css

}  // namespace rlhf::annotate
