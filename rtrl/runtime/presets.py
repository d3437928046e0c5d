"""The presets of `rtrl train --preset NAME`: named sets of settings over ``TrainConfig``'s defaults (any flag, file
or keyword still overrides them; ``rtrl.runtime.config.resolve_config`` applies them). Plain dicts, no imports, so
that the settings module stays small and the presets read as one table."""

# The paper's settings (docs/DESIGN.md §5; Irie et al. 2024, appendix) and the built-in memory job; any flag
# still overrides. Actors: the paper ran 48 actors; 2 actors × 8 environments suit a 2-core machine
# (a learner batch of 32 rollouts is then 4 actor rollouts), scale num_actors up on a bigger one.
_PAPER = dict(cell="elstm", learning="rtrl", batch_size=32, stem="resnet", stem_hidden_size=256, forget_bias=0.0, lr=6e-4,
              entropy_cost=0.01, baseline_cost=0.5, rmsprop_alpha=0.99, rmsprop_eps=0.01, grad_norm_clip=40.0,
              discounting=0.99, reward_clip=True, num_actors=2, envs_per_actor=8)
PRESETS: dict[str, dict] = {
    # the streaming learner on the built-in delayed recall: one stream, Stream AC(lambda)'s ObGD settings with the
    # entropy bonus stepped outside the trace (it learned delays 16-64 where Stream AC's did not), the memory core
    "stream": dict(learner="stream", env="memory:delayed_recall?cues=2&delay=30", cell="elstm", learning="rtrl",
                   total_steps=1_000_000, num_envs=1, hidden_size=32, stem="identity", forget_bias=3.0,
                   stream_lr=1.0, trace_decay=0.8, kappa_value=2.0, kappa_policy=3.0, entropy_cost=0.01,
                   reward_norm=True, obs_norm=False, entropy_step="direct"),
    "atari": dict(_PAPER, env="atari:Pong", unroll_length=50, hidden_size=256, total_steps=200_000_000),
    "procgen": dict(_PAPER, env="procgen:chaser?distribution_mode=hard&num_levels=500", unroll_length=50,
                    hidden_size=256, total_steps=200_000_000),
    "dmlab": dict(_PAPER, env="dmlab:rooms_watermaze", unroll_length=100, hidden_size=512,
                  total_steps=100_000_000),
    # not the paper's: the recipe with which R2AC learned Pong on a 2-core CPU (docs/BENCHMARKS.md): the
    # DQN stem (~6x cheaper), LayerNorm on its features (keeps the eLSTM gates out of saturation) and
    # A2C-sized batches (80 steps per update) for many updates per frame
    "atari-cpu": dict(_PAPER, env="atari:Pong", stem="nature", feature_norm=True, unroll_length=20, batch_size=4,
                      envs_per_actor=4, hidden_size=256, total_steps=4_000_000),
    # the stem only gets within-rollout gradients (as in the paper), so a learned stem cannot learn to
    # encode a cue whose reward arrives rollouts later; vector observations go to the core as they are
    "memory": dict(env="memory:delayed_recall?cues=2&delay=30", cell="elstm", learning="rtrl", total_steps=2_000_000,
                   unroll_length=10, batch_size=32, hidden_size=32, stem="identity", stem_hidden_size=64,
                   forget_bias=3.0, lr=2e-3, entropy_cost=0.01, num_actors=2, envs_per_actor=16),
    # the one configuration of the memory suite (docs/MEMORY_SUITE.md), the same for every core: time scales
    # spread up to 300 steps at init (chrono), a wider core with larger recurrent weights, standardised
    # advantages (POPGym's rewards are ±1/episode length per step) and RMSprop's epsilon at 1e-5
    "memory-suite": dict(env="memory:sequence_recall?cues=4&length=3&delay=50", cell="elstm", learning="rtrl",
                         total_steps=2_000_000, unroll_length=10, batch_size=32, hidden_size=128, stem="identity",
                         chrono_max=300.0, init_std=0.5, normalize_advantages=True, rmsprop_eps=1e-5, lr=2e-3,
                         entropy_cost=0.01, num_actors=2, envs_per_actor=16),
    # continuous control (docs/MUJOCO.md), not the paper's: MuJoCo with the velocities masked, vector
    # observations normalised, rewards scaled to returns of order 1 (not clipped), a Gaussian policy with a
    # state-independent log std, standardised advantages, no entropy bonus (CleanRL's PPO has none there);
    # each batch used for 4 passes of 4 minibatches under APPO's clipped surrogate (one pass learned ~4x slower)
    "mujoco": dict(env="mujoco:Hopper-v5?observe=position", cell="elstm", learning="rtrl", total_steps=1_000_000,
                   unroll_length=16, batch_size=16, hidden_size=64, stem="mlp", stem_hidden_size=64,
                   obs_norm=True, reward_norm=True, reward_clip=False, normalize_advantages=True,
                   entropy_cost=0.0, lr=3e-4, rmsprop_eps=1e-5, discounting=0.99, num_actors=2, envs_per_actor=8,
                   update_epochs=4, minibatches=4, policy_clip=0.2),
}
# one configuration per cell family in the memory suite (rtrl.bench.suite_labels): the paired cells' presets are
# memory-suite with the hidden size at which the whole agent (identity stem, core, heads reading 2N) has the
# eLSTM's parameter count at N = 128, averaged over the suite's 8 tasks: eLSTM 19,957 (18,563 to 22,409 by
# task); RTU at N = 864 20,093 (12,099 to 36,297: its count grows with the input size, the eLSTM's with N^2);
# complex LRU at N = 816 19,793 (12,243 to 35,097)
PRESETS["memory-suite-rtu"] = dict(PRESETS["memory-suite"], cell="rtu", hidden_size=864, rtu_variant="linear")
PRESETS["memory-suite-clru"] = dict(PRESETS["memory-suite"], cell="clru", hidden_size=816)
