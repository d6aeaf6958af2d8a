#!/usr/bin/env python3
"""Writes docs/reproduction.md from the example studies' results (scripts/reproduce.sh runs it).

Input: the JSON of each finished study (`twosed study ... --format json`) and, per study, the
JSON of `twosed bound` for each model's 2sED measurement. Every number and every sentence of
findings below is computed from those files, so the report says what the data say, including
where the claim (the 2sED computed before training orders the models as their training losses)
fails. Standard library only.
"""
import argparse
import json
import math
import os


def fmt(v, spec=".2f"):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def ci(c):
    if c is None or c.get("value") is None:
        return "n/a"
    lo, hi = c.get("lo"), c.get("hi")
    return f"{c['value']:+.2f} [{fmt(lo, '+.2f')}, {fmt(hi, '+.2f')}]"


def correlation(study, measure, target="train loss"):
    for c in study["correlations"]:
        if c["measure"] == measure and c["target"] == target:
            return c
    return None


def ranks(x):
    order = sorted(range(len(x)), key=lambda i: x[i])
    r = [0.0] * len(x)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and x[order[j + 1]] == x[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(x, y):
    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def discordant_pairs(models, measure):
    """Pairs where the model with the larger measure reached the larger training loss."""
    out = []
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            da = a["measures"][measure] - b["measures"][measure]
            dl = a["train_loss_mean"] - b["train_loss_mean"]
            if da * dl > 0:
                hi, lo = (a, b) if da > 0 else (b, a)
                out.append((hi, lo))
    return out


def study_section(study, bounds, img_dir):
    name = study["name"]
    models = study["models"]
    zetas = study["zetas"]
    sigmas = study["sigmas"]
    z0, z1 = zetas[0], zetas[-1]
    at = "at eps_zeta(n)"
    lines = [f"## Study `{name}`", ""]
    lines.append(f"- data: {study['data']}")
    lines.append(f"- n = {study['n_train']:g} training examples; {study['epochs']} epochs x {len(study['seeds'])} "
                 f"seeds per model; losses are the final training/test cross-entropy, mean over seeds")
    lines.append(f"- measures before training at the initialisation box"
                 + (f" (N = {study['inputs']} inputs, M = {study['samples']} parameter samples)" if "inputs" in study else "")
                 + ", at eps_zeta(n) = (2 pi log n / n)^(1/(2(1-zeta)))")
    lines.append(f"- study file: `examples/{name}.json`; figures: `{img_dir}/{name}-*.png`")
    lines.append("")
    head = ["model", "d", f"2sED z={z0:g}", f"2sED z={z1:g}"]
    for s in sigmas:
        head.append(f"lower s={s:g} z={z0:g}")
    head += ["ED(n)", "train loss", "test loss", "test acc"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for m in models:
        ms = m["measures"]
        row = [f"`{m['name']}`", str(m["d"]), fmt(ms.get(f"2sED zeta={z0:g} {at}")),
               fmt(ms.get(f"2sED zeta={z1:g} {at}"))]
        for s in sigmas:
            row.append(fmt(ms.get(f"lower 2sED sigma={s:g} zeta={z0:g} {at}")))
        row += [fmt(ms.get("ED(n)")), f"{fmt(m['train_loss_mean'], '.4f')} ± {fmt(m['train_loss_sd'], '.4f')}",
                fmt(m["test_loss_mean"], ".4f"), fmt(m.get("test_accuracy_mean"), ".3f")]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(f"![{name}: measures against eps]({img_dir}/{name}-curves.png)")
    lines.append("")
    lines.append(f"![{name}: training loss]({img_dir}/{name}-training.png) "
                 f"![{name}: headline measure against final training loss]({img_dir}/{name}-scatter.png)")
    lines.append("")

    # Q1: ordering.
    lines.append("### Does the measure order the models as their training losses do?")
    lines.append("")
    lines.append("Rank correlation with the final training loss over the models (95% bootstrap interval over "
                 "models). A negative value means: larger measure, lower loss.")
    lines.append("")
    lines.append("| measure | Spearman rho (train) | Kendall tau (train) | Spearman rho (test) |")
    lines.append("|---|---|---|---|")
    keys = ["params d", "ED(n)", f"2sED zeta={z0:g} {at}", f"2sED zeta={z1:g} {at}"]
    for s in sigmas:
        keys += [f"lower 2sED sigma={s:g} zeta={z0:g} {at}", f"lower 2sED sigma={s:g} zeta={z1:g} {at}"]
    for k in keys:
        c = correlation(study, k)
        if c is None:
            continue
        lines.append(f"| {k} | {ci(c['spearman'])} | {ci(c['kendall'])} | "
                     f"{ci((correlation(study, k, 'test loss') or {}).get('spearman'))} |")
    lines.append("")
    findings = []
    headline = study["headline"]
    pairs = discordant_pairs(models, headline)
    c = correlation(study, headline)
    d = correlation(study, "params d")
    total = len(models) * (len(models) - 1) // 2
    findings.append(
        f"The headline measure ({headline}) has Spearman rho {ci(c['spearman'])} with the final training loss; "
        f"{total - len(pairs)} of {total} model pairs are ordered as the losses are"
        + (" (every pair)." if not pairs else "."))
    if pairs:
        shown = "; ".join(f"`{a['name']}` ({a['measures'][headline]:.1f}, loss {a['train_loss_mean']:.4f}) above "
                          f"`{b['name']}` ({b['measures'][headline]:.1f}, loss {b['train_loss_mean']:.4f})"
                          for a, b in pairs[:6])
        findings.append(f"Where it fails (larger measure, larger loss): {shown}"
                        + (f"; and {len(pairs) - 6} more." if len(pairs) > 6 else "."))
    ct = correlation(study, headline, "test loss")
    if ct is not None:
        findings.append(f"Against the test loss the headline measure has rho {ci(ct['spearman'])}.")
    if d is not None and c is not None and c["spearman"]["value"] is not None and d["spearman"]["value"] is not None:
        better = abs(c["spearman"]["value"]) > abs(d["spearman"]["value"])
        findings.append(
            f"The parameter count alone has rho {ci(d['spearman'])}: the headline measure "
            + ("orders the models better than d does." if better else
               "does not order the models better than d does."))
    # The standard model's Fisher at N inputs has rank <= N(k-1): the 2sED at zeta = 0 cannot
    # exceed it, so larger models are told apart only through zeta*d or the Markov blocks.
    if "inputs" in study and models and "k" in models[0]:
        cap = study["inputs"] * (models[0]["k"] - 1)
        near = [m for m in models if m["measures"].get(f"2sED zeta={z0:g} {at}", 0) > 0.8 * cap]
        if near:
            findings.append(
                f"The standard model's Fisher has rank at most N(k-1) = {cap} with N = {study['inputs']} inputs, "
                f"and the 2sED at zeta = {z0:g} is above 80% of that for {len(near)} of {len(models)} models: "
                "more inputs would separate them better.")
    lines += [f"- {f}" for f in findings]
    lines.append("")

    # Q2: lower vs chain.
    if sigmas:
        lines.append("### How close is the lower 2sED to the chain 2sED?")
        lines.append("")
        lines.append("Both from the same parameter samples and noise, at eps_zeta(n); lower <= chain by Jensen "
                     "([math.md](math.md) section 4). The gap is what the layer-by-layer bound gives up.")
        lines.append("")
        head = ["model"] + [f"s={s:g} z={z:g}: lower / chain" for s in sigmas for z in (z0, z1)]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        worst = 0.0
        for m in models:
            row = [f"`{m['name']}`"]
            for s in sigmas:
                for z in (z0, z1):
                    lo = m["measures"].get(f"lower 2sED sigma={s:g} zeta={z:g} {at}")
                    ch = m["measures"].get(f"chain 2sED sigma={s:g} zeta={z:g} {at}")
                    if lo is None or ch is None:
                        row.append("n/a")
                        continue
                    rel = (ch - lo) / ch if ch else 0.0
                    if z == z0:
                        worst = max(worst, rel)
                    row.append(f"{lo:.1f} / {ch:.1f} ({100 * rel:.1f}% below)")
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
        lines.append(f"- At zeta = {z0:g} the lower 2sED is at most {100 * worst:.1f}% below the chain 2sED in this "
                     "study.")
        lines.append("")

    # Q3: sigma.
    if len(sigmas) > 1:
        lines.append("### How does sigma change the picture?")
        lines.append("")
        ka = f"lower 2sED sigma={sigmas[0]:g} zeta={z0:g} {at}"
        kb = f"lower 2sED sigma={sigmas[-1]:g} zeta={z0:g} {at}"
        xa = [m["measures"][ka] for m in models]
        xb = [m["measures"][kb] for m in models]
        change = sorted((b - a) / a for a, b in zip(xa, xb))
        lines.append(f"- From sigma = {sigmas[0]:g} to sigma = {sigmas[-1]:g} the lower 2sED (zeta = {z0:g}) "
                     f"changes by {100 * change[len(change) // 2]:+.1f}% (median over models; range "
                     f"{100 * change[0]:+.1f}% to {100 * change[-1]:+.1f}%). The two orderings of the models have "
                     f"Spearman rho {spearman(xa, xb):+.2f}.")
        for s in sigmas:
            k = f"lower 2sED sigma={s:g} zeta={z0:g} {at}"
            c = correlation(study, k)
            vals = ", ".join(f"{m['measures'][k]:.0f}" for m in models)
            lines.append(f"- sigma = {s:g}: lower 2sED (zeta = {z0:g}) per model {vals}; Spearman with training "
                         f"loss {ci(c['spearman']) if c else 'n/a'}.")
        lines.append("")

    # Generalisation estimate.
    if bounds:
        lines.append("### The generalisation estimate ([math.md](math.md) section 6)")
        lines.append("")
        lines.append("`twosed bound` on each model's 2sED measurement at n = the training-set size, B = 1 (a 0-1 "
                     "loss), L = 1, delta = 0.05, eps minimised over [1e-12, 0.99]; beside it the observed "
                     "gap in accuracy (train - test, mean over seeds). The estimate has covering constants set to "
                     "one and log vol(Theta) dropped: it is not a certified bound.")
        lines.append("")
        lines.append(f"| model | eps* (z={z0:g}) | gap estimate (z={z0:g}) | gap estimate (z={z1:g}) | "
                     "observed accuracy gap |")
        lines.append("|---|---|---|---|---|")
        for m in models:
            b = bounds.get(m["name"])
            if not b:
                continue
            est = {e["zeta"]: e for e in b["estimates"]}
            obs = None
            if m.get("train_accuracy_mean") is not None and m.get("test_accuracy_mean") is not None:
                obs = m["train_accuracy_mean"] - m["test_accuracy_mean"]
            lines.append(f"| `{m['name']}` | {est[z0]['eps']:.2e} | {est[z0]['gap']:.3f} | {est[z1]['gap']:.3f} | "
                         f"{fmt(obs, '+.3f')} |")
        lines.append("")
    return lines


def summary(studies):
    """One row per study: how well each measure orders the models by final training loss."""
    lines = ["## Summary", "",
             "Spearman rho between each measure (before training) and the final training loss, over the models "
             "of each study, with 95% bootstrap intervals; the last column counts the model pairs the headline "
             "measure (lower 2sED, first sigma, smallest zeta, at eps_zeta(n)) orders as the losses are.", "",
             "| study | models | headline (lower 2sED) | 2sED (smallest zeta) | ED(n) | params d | pairs ordered |",
             "|---|---|---|---|---|---|---|"]
    notes = []
    for study, _ in studies:
        z0 = study["zetas"][0]
        at = "at eps_zeta(n)"
        h = correlation(study, study["headline"])
        row = [f"`{study['name']}`", str(len(study["models"])), ci(h["spearman"]) if h else "n/a"]
        for k in (f"2sED zeta={z0:g} {at}", "ED(n)", "params d"):
            c = correlation(study, k)
            row.append(ci(c["spearman"]) if c else "n/a")
        total = len(study["models"]) * (len(study["models"]) - 1) // 2
        row.append(f"{total - len(discordant_pairs(study['models'], study['headline']))} of {total}")
        lines.append("| " + " | ".join(row) + " |")
        d = correlation(study, "params d")
        if h and d and h["spearman"]["value"] is not None and d["spearman"]["value"] is not None:
            hv, dv = h["spearman"]["value"], d["spearman"]["value"]
            hi = h["spearman"]["hi"]
            verdict = ("the lower 2sED ranks the models with the training losses, and the interval excludes zero"
                       if hi is not None and hi < 0 else
                       "the interval of the lower 2sED's correlation includes zero: the claim is not supported here")
            cmp = "better than" if abs(hv) > abs(dv) else ("as well as" if abs(hv) == abs(dv) else "worse than")
            sc = correlation(study, f"2sED zeta={z0:g} {at}")
            sv = sc["spearman"]["value"] if sc else None
            notes.append(f"`{study['name']}`: {verdict}; it orders them {cmp} the parameter count "
                         f"({hv:+.2f} against {dv:+.2f})"
                         + (f"; the standard model's 2sED at zeta = {z0:g} has {sv:+.2f}." if sv is not None else "."))
    lines.append("")
    lines += [f"- {n}" for n in notes]
    lines.append("")
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True)
    ap.add_argument("--img-dir", required=True, help="figure folder, relative to the report")
    ap.add_argument("--header", required=True, help="a JSON file: command, machine, seconds, version, date")
    ap.add_argument("studies", nargs="+", help="STUDY.json[:BOUNDS.json]")
    args = ap.parse_args()
    h = json.load(open(args.header))
    out = ["# Reproduction report: does the 2sED computed before training rank architectures?", "",
           "Generated by `scripts/reproduce.sh` (do not edit by hand; rerun it). "
           f"twosed {h['version']}, {h['date']}, {h['machine']}; {h['seconds']:.0f} s in all.", "",
           "The claim checked (Datres et al., NeurIPS 2024): the 2sED, computed before training, correlates "
           "with the training error reached after training, across architectures. Each example study measures a "
           "family of models at their initialisation box ([math.md](math.md) section 3), trains each with several "
           "seeds, and rank-correlates. With 7 to 12 models per study the bootstrap intervals are wide; read them before "
           "the point values.", ""]
    studies = []
    for spec in args.studies:
        path, _, bpath = spec.partition(":")
        studies.append((json.load(open(path)), json.load(open(bpath)) if bpath else {}))
    out += summary(studies)
    for study, bounds in studies:
        out += study_section(study, bounds, args.img_dir)
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
