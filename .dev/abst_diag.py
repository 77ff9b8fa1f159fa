"""Separability of 'abstain now' on the final-hop page's first view: unanswerable vs answerable."""
import re, torch, numpy as np
import gymnasium as gym, rlft.envs
from rlft.envs.web.research.expert import ResearchExpert
from rlft.agents.text_encoder import TextEncoder
from rlft.wrappers.valid_actions import (strip_names, viewport_sentences, page_quotes,
                                         content_words, _WORD)
enc = TextEncoder()
env = gym.make("rlft/Research-v0", split="train")
FIELD = re.compile(r"^([A-Z][A-Za-z ]+):")
def stem(w): return w[:5]
def residual(goal, quotes):
    qw = {stem(w) for q in quotes for w in content_words(strip_names(q))}
    words = [w for w in _WORD.findall(strip_names(goal).lower())]
    keep = [w for w in words if stem(w) not in qw]
    return " ".join(keep)
def segments(page):
    lines = page.splitlines()
    fields = [m.group(1) for l in lines if (m := FIELD.match(l.strip())) and not l.startswith("Quotes")]
    return fields, [strip_names(s) for s in viewport_sentences(page)]
rows = []
for seed in range(2000):
    obs, info = env.reset(seed=seed)
    u = env.unwrapped; q = u.question
    last = u.wiki.corpus.entities[q.path[-1][0]]
    ex = ResearchExpert(env); done = False; seen = False
    while not done:
        here = u.wiki.entity_at(u._backend.url)
        if here is last and not seen:
            seen = True
            quotes = page_quotes(obs["page"])
            fields, sents = segments(obs["page"])
            rows.append((q.answer is None, obs["goal"], residual(obs["goal"], quotes), strip_names(obs["goal"]), fields, sents, q.path[-1][1]))
        a = ex.act(obs, info)
        obs, r, t, tr, info = env.step(a); done = t or tr
print(len(rows), sum(r[0] for r in rows))
def score(rel, texts):
    if not texts: return 0.0
    e = enc([rel] + texts)
    return float((e[1:] @ e[0]).max())
from sklearn.metrics import roc_auc_score
for name, pick in [("residual/fields", lambda r: (r[2], r[4])), ("residual/sents", lambda r: (r[2], r[5])),
                   ("full/fields", lambda r: (r[3], r[4])), ("residual/fields+sents", lambda r: (r[2], r[4] + r[5]))]:
    s = [score(*pick(r)) for r in rows]
    y = [r[0] for r in rows]
    print(name, "AUC(unans -> low)", roc_auc_score(y, [-x for x in s]))
for r in rows[:12]:
    print(r[0], r[6], "|", r[2], "|", r[4])

# learned: per row, features of the best field by cosine
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict
X, y = [], []
for r in rows:
    if not r[4]:
        continue
    e = enc([r[2], r[3]] + r[4])
    cs = e[2:] @ e[0]; cf = e[2:] @ e[1]
    i = int(cs.argmax()); j = int(cf.argmax())
    X.append(np.concatenate([(e[0] * e[2 + i]).numpy(), (e[1] * e[2 + j]).numpy(), [float(cs.max()), float(cf.max()), float(torch.sort(cs).values[-2]) if len(cs) > 1 else 0.0]]))
    y.append(r[0])
X = np.array(X); y = np.array(y)
for C in (0.1, 1.0, 10.0):
    p = cross_val_predict(LogisticRegression(C=C, max_iter=2000, class_weight="balanced"), X, y, cv=5, method="predict_proba")[:, 1]
    print("learned C", C, "AUC", roc_auc_score(y, p))
