### The decoder's samplers (--sampler, DEFAULT_SAMPLER): /help, captions, errors.

sampler-unknown = Unknown sampler <code>{ $value }</code> for <code>{ $option }</code>. Available: { $available }.

# Appended to a picture's caption, after its time: with the seed and steps it repeats the picture.
sampler-caption = sampler { $sampler }

sampler-help =
    <b>Samplers</b> (<code>--sampler NAME</code>, default { $default }). Without <code>--steps</code> each takes its own number of steps:
    <code>ddpm</code>: the model's own, { $ddpm } { $ddpm ->
        [one] step
       *[other] steps
    }
    <code>ddim</code>: deterministic, smooth, { $ddim } { $ddim ->
        [one] step
       *[other] steps
    }
    <code>dpmpp</code>: DPM-Solver++, as good in fewer steps: { $dpmpp } { $dpmpp ->
        [one] step
       *[other] steps
    }, so about twice as fast
