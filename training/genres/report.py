"""The report's genre section (``tvindex report``, present when the store holds predicted
genres): how many episodes and programmes were tagged, each genre's count and mean score,
the predicted programmes, and, where an episode also has catalogue genres (``genres
predict --all``), how well the predictions agree with them."""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from tvindex.core.genres import split_genres


def genre_section(store: Any) -> dict[str, Any] | None:
    """The section's data, or None when nothing was predicted."""
    episodes = store.predicted_genres("episode")
    programmes = store.predicted_genres("programme")
    if not episodes and not programmes:
        return None
    catalogue = {p.id: split_genres(p.genre) for p in store.programmes()}
    ep_prog: dict[str, str] = {}
    for pid in catalogue:
        for ep in store.programme(pid).episodes:
            ep_prog[ep.id] = pid
    per_genre: dict[str, list[float]] = {}
    for scores in episodes.values():
        for g in scores:
            per_genre.setdefault(g.genre, []).append(g.score)
    tp = predicted = actual = 0
    compared = 0
    for eid, scores in episodes.items():
        truth = set(catalogue.get(ep_prog.get(eid, ""), ()))
        if not truth:
            continue
        compared += 1
        guess = {g.genre for g in scores}
        tp += len(truth & guess)
        predicted += len(guess)
        actual += len(truth)
    agreement = None
    if compared:
        p = tp / predicted if predicted else 0.0
        r = tp / actual if actual else 0.0
        agreement = {"episodes": compared, "micro_precision": round(p, 4),
                     "micro_recall": round(r, 4),
                     "micro_f1": round(2 * p * r / (p + r), 4) if p + r else 0.0}
    return {
        "available": True,
        "episodes_predicted": len(episodes), "programmes_predicted": len(programmes),
        "genres": [{"genre": g, "episodes": len(v), "mean_score": round(float(np.mean(v)), 4)}
                   for g, v in sorted(per_genre.items(), key=lambda kv: (-len(kv[1]), kv[0]))],
        "programmes": [{"programme": pid, "catalogue": list(catalogue.get(pid, ())),
                        "predicted": [g.to_dict() for g in scores]}
                       for pid, scores in programmes.items()],
        "agreement_with_catalogue": agreement,
    }


def summary_line(section: dict[str, Any]) -> str:
    line = (f"genres: {section['episodes_predicted']} episodes and "
            f"{section['programmes_predicted']} programmes tagged")
    agree = section.get("agreement_with_catalogue")
    if agree:
        line += (f"; vs catalogue on {agree['episodes']} episodes micro-F1 "
                 f"{agree['micro_f1']:.3f}")
    return line


def genre_html(section: dict[str, Any]) -> str:
    e = html.escape
    out = ["<h2>Predicted genres</h2>",
           (f"<p>{section['episodes_predicted']} episodes and "
            f"{section['programmes_predicted']} programmes carry predicted genres "
            "(<code>tvindex genres predict</code>; search them with <code>anygenre:</code>)."
            "</p>"),
           "<table><tr><th>genre</th><th>episodes</th><th>mean score</th></tr>"]
    out += [f"<tr><td>{e(g['genre'])}</td><td>{g['episodes']}</td>"
            f"<td>{g['mean_score']:.3f}</td></tr>" for g in section["genres"]]
    out.append("</table>")
    if section["programmes"]:
        out.append("<table><tr><th>programme</th><th>catalogue</th><th>predicted</th></tr>")
        for p in section["programmes"]:
            pred = ", ".join(f"{e(g['genre'])} {g['score']:.2f}" for g in p["predicted"])
            out.append(f"<tr><td>{e(p['programme'])}</td><td>{e(', '.join(p['catalogue']))}"
                       f"</td><td>{pred}</td></tr>")
        out.append("</table>")
    agree = section.get("agreement_with_catalogue")
    if agree:
        out.append(f"<p>Against the catalogue's genres on {agree['episodes']} episodes: micro "
                   f"precision {agree['micro_precision']:.3f}, recall "
                   f"{agree['micro_recall']:.3f}, F1 {agree['micro_f1']:.3f}.</p>")
    return "\n".join(out)
