import gymnasium as gym, rlft.envs
from rlft.envs.web.research.expert import ResearchExpert
env = gym.make("rlft/Research-v0", split="train")
n=0
for seed in range(200):
    obs, info = env.reset(seed=seed)
    q = env.unwrapped.question
    if q.answer is not None: continue
    ex = ResearchExpert(env)
    done=False
    while not done:
        a = ex.act(obs, info)
        if a == "abstain":
            print("GOAL", obs["goal"]); print(obs["page"]); print("PATH", q.path); print('-----')
        obs, r, term, trunc, info = env.step(a); done = term or trunc
    n+=1
    if n>=3: break
