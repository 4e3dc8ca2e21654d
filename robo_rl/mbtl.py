"""Model-based transfer learning (MBTL) over a family of task contexts.

Cho, Jayawardana, Li, Wu: "Model-Based Transfer Learning for Contextual Reinforcement Learning",
NeurIPS 2024 (arXiv 2408.04498); as its official code does it (jhoon-cho/MBTL at 671f0e0,
`MBTL/utils.py::MBTL` with `acquisition_function='new_ucb_beta_log'`).

A family is N contexts on a 1-D grid (configs/family/); everything here works in grid-index units
0..N-1, as the official code does. U[s, t] is the normalised return of the policy trained on source s
and run zero-shot on target t. The model: a policy trained on x is worth about J(x) - theta |x - y| on
y; J is a Gaussian process over the trained sources. Each step trains the context whose predicted
marginal improvement of the best-so-far transfer, averaged over all targets, is largest:

    a(i) = mean_j max(mu_i + sqrt(ln(k+1)) sigma_i - theta |i - j| - V(j), 0)

with k the zero-based step and V(j) the best observed transfer to j (0 where no trained policy covers it).

This module holds the method and its baselines on (partial) transfer matrices, and the online loop
(`run_mbtl`) that trains only the sources MBTL picks, as suite runs executed by robo_rl/jobs.py.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from robo_rl.config import ConfigError
from robo_rl.logger import write_json

# ---------------------------------------------------------------------------------------------------
# The method on a transfer matrix
# ---------------------------------------------------------------------------------------------------


def normalise(returns: np.ndarray, bounds: Sequence[float]) -> np.ndarray:
    """(x - lb) / (ub - lb), clipped to [0, 1] (the official code leaves it unclipped; the GP's
    hyperparameter bounds assume [0, 1])."""
    low, high = float(bounds[0]), float(bounds[1])
    return np.clip((np.asarray(returns, dtype=np.float64) - low) / (high - low), 0.0, 1.0)


def middle(n: int) -> int:
    """Step 0's source: the grid's middle (for even N the lower of the two, as the code's argmin picks)."""
    return (n - 1) // 2


def best_transfer(rows: Mapping[int, np.ndarray], n: int) -> np.ndarray:
    """V(j): the best observed normalised transfer to each target j, 0 where nothing is trained."""
    best = np.zeros(n)
    for row in rows.values():
        best = np.maximum(best, row)
    return best


def gp_training_targets(order: Sequence[int], rows: Mapping[int, np.ndarray]) -> np.ndarray:
    """The GP's target at the source trained at step l: the best performance seen there by step l,
    max over the sources trained at steps 0..l of U[s, x_l] (the code's J_transfer[x_l, l])."""
    return np.array([max(rows[s][x] for s in order[: step + 1]) for step, x in enumerate(order)])


def fit_gp(order: Sequence[int], rows: Mapping[int, np.ndarray], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The paper's GP on the trained sources; its mean and standard deviation on every context."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel

    kernel = ConstantKernel(1.0, (1e-3, 1e3)) * RBF(length_scale=1.0, length_scale_bounds=(1e-2, 1e2))
    gp = GaussianProcessRegressor(kernel=kernel, alpha=0.1 ** 2, n_restarts_optimizer=9, random_state=seed)
    with warnings.catch_warnings():  # hyperparameters at their bounds with few points: expected early on
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(np.asarray(order, dtype=np.float64).reshape(-1, 1), gp_training_targets(order, rows))
    mean, std = gp.predict(np.arange(n, dtype=np.float64).reshape(-1, 1), return_std=True)
    return mean, std


def fitted_slopes(rows: Mapping[int, np.ndarray], n: int) -> np.ndarray:
    """`linear_estimated`: for each trained source, the least-squares slope of |U[s,s] - U[s,j]| against
    |s - j|; each candidate takes the slope of the trained source nearest to it. (The official code
    computes these per candidate for its estimate of V but its acquisition then reuses the last
    candidate's slope; here each candidate's own is used in both.)"""
    distance = np.arange(n)
    per_source = {}
    for s, row in rows.items():
        gaps = np.abs(row[s] - row)
        per_source[s] = float(np.polyfit(np.abs(distance - s), gaps, 1)[0])
    sources = np.array(sorted(per_source))
    nearest = sources[np.abs(sources[None, :] - distance[:, None]).argmin(axis=1)]
    return np.array([per_source[int(s)] for s in nearest])


def acquisition(mean: np.ndarray, std: np.ndarray, step: int, slope: np.ndarray | float, best: np.ndarray) -> np.ndarray:
    """a(i) = mean_j max(mu_i + sqrt(ln(k+1)) sigma_i - theta_i |i - j| - V(j), 0)  (`new_ucb_beta_log`)."""
    n = len(mean)
    beta = math.sqrt(math.log(step + 1))
    theta = np.broadcast_to(np.asarray(slope, dtype=np.float64), (n,))
    distance = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])
    predicted = (mean + beta * std)[:, None] - theta[:, None] * distance
    return np.maximum(predicted - best[None, :], 0.0).mean(axis=1)


def next_source(order: Sequence[int], rows: Mapping[int, np.ndarray], n: int, slope: float, gap: str,
                seed: int) -> tuple[int, dict[str, list[float]]]:
    """MBTL's next source given the trained ones (their observed rows), and what the model predicted."""
    if not order:
        return middle(n), {}
    mean, std = fit_gp(order, rows, n, seed)
    theta = fitted_slopes(rows, n) if gap == "linear_estimated" else slope
    score = acquisition(mean, std, len(order), theta, best_transfer(rows, n))
    untrained = [i for i in np.argsort(-score, kind="stable") if int(i) not in order]  # never the same twice
    chosen = int(untrained[0])
    return chosen, {"mean": mean.tolist(), "std": std.tolist(), "acquisition": score.tolist()}


def mbtl_order(matrix: np.ndarray, budget: int, slope: float, gap: str = "linear", seed: int = 0) -> list[int]:
    """MBTL run offline on a full normalised transfer matrix (training source s reveals row s)."""
    n = matrix.shape[0]
    order: list[int] = []
    rows: dict[int, np.ndarray] = {}
    for _ in range(min(budget, n)):
        source, _ = next_source(order, rows, n, slope, gap, seed)
        order.append(source)
        rows[source] = matrix[source]
    return order


# ---------------------------------------------------------------------------------------------------
# Baselines (`MBTL/collect_result.py`, `MBTL/utils.py`), all on the same matrix
# ---------------------------------------------------------------------------------------------------


def generalised_performance(matrix: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """J_k = mean_j max_{l <= k} U[x_l, j] for k = 1..len(order)."""
    return np.maximum.accumulate(matrix[list(order)], axis=0).mean(axis=1)


def independent(matrix: np.ndarray) -> float:
    """Every context trained on itself: the diagonal's mean (N trainings)."""
    return float(np.diag(matrix).mean())


def oracle(matrix: np.ndarray) -> float:
    """The best trained policy for every target, all N trained: the mean of the column maxima."""
    return float(matrix.max(axis=0).mean())


def sequential_oracle(matrix: np.ndarray, budget: int) -> list[int]:
    """Greedy with the full matrix known: each step adds the source that raises J the most."""
    order: list[int] = []
    best = np.zeros(matrix.shape[1])
    for _ in range(min(budget, matrix.shape[0])):
        gains = [np.maximum(best, matrix[i]).mean() if i not in order else -1.0 for i in range(matrix.shape[0])]
        order.append(int(np.argmax(gains)))
        best = np.maximum(best, matrix[order[-1]])
    return order


def random_orders(n: int, draws: int = 100, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.permutation(n).tolist() for _ in range(draws)]


def _nearest_untrained(value: float, n: int, taken: Sequence[int]) -> int:
    free = [i for i in range(n) if i not in taken]
    return min(free, key=lambda i: (abs(i - value), i))


def greedy_interval_order(n: int, budget: int) -> list[int]:
    """Greedy interval splitting (GTTL): the middle first, then split the widest gap between the trained
    sources and the grid's ends (a third of the way in for an end gap, the midpoint otherwise)."""
    low, high = 0, n - 1
    marks = [float(low), float(high)]
    order: list[int] = []
    for step in range(min(budget, n)):
        if step == 0:
            target = (low + high) / 2
        else:
            gaps = np.diff(marks)
            widest = int(gaps.argmax())
            left, right = marks[widest], marks[widest + 1]
            if widest == 0:
                target = (2 * left + right) / 3
            elif widest == len(gaps) - 1:
                target = (left + 2 * right) / 3
            else:
                target = (left + right) / 2
        order.append(_nearest_untrained(target, n, order))
        marks = sorted(marks + [float(order[-1])])
    return order


def equidistant_placement(n: int, budget: int) -> list[int]:
    """K sources at the centres of K equal parts of the grid, recomputed for each K. (The official
    runner calls this with a budget of 100 and reads its prefixes, which makes it a sweep from the top
    context downward rather than a placement of K points.)"""
    low, high = 0, n - 1
    placement: list[int] = []
    for k in range(min(budget, n)):
        placement.append(_nearest_untrained(high - (high - low) / (2 * budget) - (high - low) * k / budget, n, placement))
    return placement


def selection_curves(matrix: np.ndarray, slope: float, seed: int = 0, gap: str = "linear") -> dict[str, Any]:
    """Generalised performance against the number of trained sources k = 1..N for every method."""
    n = matrix.shape[0]
    randoms = np.array([generalised_performance(matrix, o) for o in random_orders(n, 100, seed)])
    order = mbtl_order(matrix, n, slope, gap, seed)
    return {
        "MBTL": generalised_performance(matrix, order).tolist(),
        "MBTL order": order,
        "Sequential oracle": generalised_performance(matrix, sequential_oracle(matrix, n)).tolist(),
        "Random (mean of 100)": randoms.mean(axis=0).tolist(),
        "Greedy interval splitting": generalised_performance(matrix, greedy_interval_order(n, n)).tolist(),
        "Equidistant": [float(generalised_performance(matrix, equidistant_placement(n, k))[-1]) for k in range(1, n + 1)],
        "Independent": [independent(matrix)] * n,
        "Oracle": [oracle(matrix)] * n,
    }


def first_k_reaching(curve: Sequence[float], level: float, tolerance: float = 1e-9) -> int | None:
    """The first k (1-based) at which a curve reaches `level`; None if it never does."""
    for k, value in enumerate(curve, start=1):
        if value >= level - tolerance:
            return k
    return None


# ---------------------------------------------------------------------------------------------------
# Families and the online loop
# ---------------------------------------------------------------------------------------------------


def family_contexts(family: Mapping[str, Any]) -> list[float]:
    """The family's grid of context values; refuses a grid outside the family's valid range."""
    key, (low_ok, high_ok) = family["key"], family["valid"]
    low, high, n = float(family["low"]), float(family["high"]), family["n"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ConfigError(f"family.n must be an integer >= 2, got {n!r}")
    for name, value in (("low", low), ("high", high)):
        if not low_ok <= value <= high_ok:
            raise ConfigError(f"family.{name}: {key}={value:g} is outside the valid range [{low_ok:g}, {high_ok:g}] "
                              f"of family {family['name']}")
    if not low < high:
        raise ConfigError(f"family.low ({low:g}) must be below family.high ({high:g})")
    return [float(v) for v in np.round(np.linspace(low, high, n), 10)]


def source_overrides(family: Mapping[str, Any], value: float, seed: int) -> list[str]:
    """The suite training command of one source context (an ordinary run: resumable, `robo-rl eval`-able)."""
    return [f"agent={family['agent']}", f"env={family['env']}", f"env.context.{family['key']}={value!r}",
            f"env.observe_context={str(bool(family['observe_context'])).lower()}", f"train.steps={int(family['steps'])}",
            f"train.eval_episodes={int(family['eval_episodes'])}", "train.video_steps=0", "train.progress=false",
            f"seed={seed}", "threads=1", *family.get("overrides", [])]


def train_source(overrides: list[str], run_dir: str) -> dict[str, Any]:
    """One source training (a Ray task); continues the run if an earlier attempt left a checkpoint."""
    from robo_rl.config import compose
    from robo_rl.runs import load_run_config, train_run

    run_dir_path = Path(run_dir)
    resume = (run_dir_path / "checkpoint.safetensors").exists()
    cfg = load_run_config(run_dir_path) if resume else compose(overrides)
    final = train_run(cfg, run_dir_path, resume=resume)
    return {"run_dir": run_dir, "mean_return": final["mean_return"], "steps": int(cfg.train.steps)}


def evaluate_source(run_dir: str, key: str, targets: list[tuple[int, float]], episodes: int, seed: int) -> dict[str, Any]:
    """Zero-shot returns of one trained source on target contexts (a Ray task)."""
    from robo_rl.envs.factory import make_env
    from robo_rl.evaluate import evaluate
    from robo_rl.runs import load_agent

    agent, info = load_agent(run_dir)
    env_cfg = json.loads(json.dumps(info["env"]))
    env_cfg["context_draw"] = {}  # a multi-task policy is evaluated on each target, not on draws
    returns = {}
    for index, value in targets:
        env_cfg["context"] = {**(env_cfg.get("context") or {}), key: value}
        env = make_env(env_cfg, seed=seed)
        returns[str(index)] = evaluate(agent, env, episodes, seed=seed)["mean_return"]
        env.close()
    return {"run_dir": run_dir, "returns": returns}


def source_jobs(family: Mapping[str, Any], contexts: list[float], source: int, seed: int, folder: Path,
                chunks: int) -> tuple[Any, list[Any]]:
    """The training job of one source and its zero-shot evaluation jobs (targets split in `chunks`)."""
    from robo_rl.jobs import Job

    run_dir = folder / "sources" / f"{source:03d}_{family['key']}={contexts[source]:g}"
    train = Job(f"train source {source} ({family['key']}={contexts[source]:g})", train_source,
                {"overrides": source_overrides(family, contexts[source], seed * 1000 + source), "run_dir": str(run_dir)},
                run_dir / "train_result.json")
    targets = list(enumerate(contexts))
    size = math.ceil(len(targets) / max(1, chunks))
    evals = []
    for start in range(0, len(targets), size):
        part = targets[start:start + size]
        evals.append(Job(f"evaluate source {source} on targets {part[0][0]}-{part[-1][0]}", evaluate_source,
                         {"run_dir": str(run_dir), "key": family["key"], "targets": part,
                          "episodes": int(family["eval_episodes"]), "seed": 50_000 + seed},
                         run_dir / "transfer" / f"targets_{part[0][0]:03d}-{part[-1][0]:03d}.json"))
    return train, evals


def source_row(evals: list[Any], results: Mapping[str, dict[str, Any]], n: int) -> list[float]:
    row = [math.nan] * n
    for job in evals:
        for index, value in results[job.name]["returns"].items():
            row[int(index)] = float(value)
    if any(math.isnan(v) for v in row):
        raise RuntimeError("a transfer row is incomplete")
    return row


def deployment_table(contexts: list[float], rows: Mapping[int, list[float]], bounds: Sequence[float],
                     run_dirs: Mapping[int, str]) -> list[dict[str, Any]]:
    """For each target context: the trained policy to use (best measured zero-shot return) and that return."""
    table = []
    for j, value in enumerate(contexts):
        source = max(rows, key=lambda s: (rows[s][j], -abs(s - j)))
        table.append({"target": j, "context": value, "source": source, "source_context": contexts[source],
                      "run_dir": run_dirs[source], "return": rows[source][j],
                      "normalised": float(normalise(rows[source][j], bounds))})
    return table


def check_family(family: Mapping[str, Any], contexts: list[float], seed: int) -> None:
    """Fail before any job: every source's training config must compose and validate."""
    from robo_rl.config import compose, to_container, validate_overrides
    from robo_rl.envs.factory import make_env
    from robo_rl.runs import build_agent, check_config

    for value in (contexts[0], contexts[-1]):
        overrides = source_overrides(family, value, seed)
        try:
            validate_overrides(overrides)
            cfg = compose(overrides)
            check_config(cfg)
            env = make_env(to_container(cfg.env), seed=seed)
            try:
                build_agent(cfg, env)  # the agent takes this env's spaces (e.g. discrete actions)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"agent '{cfg.agent.name}': {exc}") from None
            finally:
                env.close()
        except ConfigError as exc:
            raise ConfigError(f"family {family['name']}: {exc}") from None


def run_mbtl(cfg: Any, out: Path) -> dict[str, Any]:
    """`robo-rl mbtl`: pick, train, evaluate and refit `budget` times; resumable from `out`/mbtl.json."""
    from robo_rl.config import to_container
    from robo_rl.jobs import run_jobs

    family = to_container(cfg.family)
    contexts = family_contexts(family)
    n, budget, seed = len(contexts), int(cfg.budget), int(cfg.seed)
    if not 1 <= budget <= n:
        raise ConfigError(f"budget must be between 1 and the family's {n} contexts, got {budget}")
    if cfg.gap not in ("linear", "linear_estimated"):
        raise ConfigError(f"gap must be linear or linear_estimated, got '{cfg.gap}'")
    check_family(family, contexts, seed)
    launcher = to_container(cfg.launcher)
    out = Path(out).resolve()  # job arguments are absolute paths: Ray workers have their own working folder
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "mbtl.json"
    state = json.loads(state_path.read_text()) if state_path.is_file() else {
        "family": family, "contexts": contexts, "seed": seed, "gap": cfg.gap, "order": [], "rows": {},
        "run_dirs": {}, "predictions": [], "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    if state["contexts"] != contexts or state["family"]["key"] != family["key"]:
        raise ConfigError(f"{out} holds an MBTL run of another family grid; choose a new out=")
    state["budget"] = budget
    for step in range(budget):
        rows = {int(s): normalise(r, family["bounds"]) for s, r in state["rows"].items()}
        if step == len(state["order"]):  # choose, and record the choice before training it
            source, prediction = next_source(state["order"], rows, n, float(family["slope"]), cfg.gap, seed)
            state["order"].append(source)
            state["predictions"].append({"step": step, "source": source, **prediction})
            write_json(state_path, state)
        source = state["order"][step]
        if str(source) in state["rows"]:
            continue
        print(f"robo-rl mbtl: step {step + 1}/{budget}: source {source} ({family['key']}={contexts[source]:g})", flush=True)
        train, evals = source_jobs(family, contexts, source, seed, out, int(launcher.get("workers") or 2))
        run_jobs([train], launcher)
        results = run_jobs(evals, launcher)
        state["rows"][str(source)] = source_row(evals, results, n)
        state["run_dirs"][str(source)] = train.kwargs["run_dir"]
        write_json(state_path, state)
    rows = {int(s): r for s, r in state["rows"].items()}
    run_dirs = {int(s): d for s, d in state["run_dirs"].items()}
    table = deployment_table(contexts, rows, family["bounds"], run_dirs)
    normalised = {s: normalise(r, family["bounds"]) for s, r in rows.items()}
    summary = {"family": family["name"], "budget": budget, "order": state["order"][:budget],
               "order_contexts": [contexts[s] for s in state["order"][:budget]],
               "generalised_performance": [float(best_transfer({s: normalised[s] for s in state["order"][:k + 1]}, n).mean())
                                           for k in range(budget)],
               "deployment": table}
    write_json(out / "deployment.json", summary)
    write_deployment_csv(out / "deployment.csv", table, family["key"])
    plot_transfer(contexts, rows, family, out / "transfer.png")
    return summary


def write_deployment_csv(path: Path, table: list[dict[str, Any]], key: str) -> None:
    lines = [f"target,{key},source,source_{key},return,normalised,run_dir"]
    lines += [f"{r['target']},{r['context']:g},{r['source']},{r['source_context']:g},{r['return']:.3f},"
              f"{r['normalised']:.4f},{r['run_dir']}" for r in table]
    tmp = path.with_suffix(".csv.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def plot_transfer(contexts: list[float], rows: Mapping[int, list[float]], family: Mapping[str, Any], path: Path) -> Path:
    """Heatmap of the observed transfer matrix (row = source, column = target; untrained rows blank)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(contexts)
    grid = np.full((n, n), np.nan)
    for s, row in rows.items():
        grid[s] = normalise(row, family["bounds"])
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=110)
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", origin="lower")
    ticks = list(range(0, n, max(1, n // 5)))
    ax.set_xticks(ticks, [f"{contexts[i]:.3g}" for i in ticks])
    ax.set_yticks(ticks, [f"{contexts[i]:.3g}" for i in ticks])
    ax.set_xlabel(f"target {family['key']}")
    ax.set_ylabel(f"source {family['key']} (trained)")
    ax.set_title(f"{family['name']}: normalised zero-shot return", fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["run_mbtl", "mbtl_order", "next_source", "acquisition", "fit_gp", "selection_curves", "normalise",
           "family_contexts", "generalised_performance", "greedy_interval_order", "equidistant_placement",
           "sequential_oracle", "fitted_slopes"]
