"""The one HTML -> text renderer."""

from __future__ import annotations

from rlft.envs.web.render import render_html


def test_buttons_links_and_pressed_state():
    page = render_html(
        "<html><head><title>t</title><style>p{}</style></head><body>"
        "<a href='/x'>Back  to\n Search</a><p>Hello <b>world</b></p>"
        "<button aria-pressed='true' data-href='/y'>large</button>"
        "<div hidden><a href='/z'>secret</a></div><script>var a = 1;</script></body></html>"
    )
    assert page.text.split("\n") == [
        "[button] Back to Search [button_]",
        "Hello world",
        "[clicked button] large [clicked button_]",
    ]
    assert [(c.label, c.href, c.pressed) for c in page.clickables] == [
        ("Back to Search", "/x", False), ("large", "/y", True)]
    assert page.find("back to search").href == "/x" and page.find("secret") is None


def test_search_form_and_submit_button_is_not_a_clickable():
    page = render_html("<form action='/search'><input type='text' name='q'>"
                       "<button type='submit'>Search</button></form>")
    assert page.text == "[search box]"
    assert page.search is not None and (page.search.action, page.search.name) == ("/search", "q")
    assert page.clickables == ()


def test_entities_and_duplicate_labels():
    page = render_html("<a href='/1'>A &amp; B</a><a href='/2'>a &amp; b</a><p>&lt;tag&gt;</p>")
    assert [c.href for c in page.clickables] == ["/1"]  # first of equal labels wins
    assert page.text.split("\n")[-1] == "<tag>"
