"""Train a ReiT LoRA adapter from a YAML config.

    accelerate launch [--config_file accelerate_configs/<setup>.yaml] train.py \
        --config trainer_configs/<setting>.yaml [--key value ...]

Every field of :class:`rella_hf.training.ReiTConfig` (TRL's SFTConfig plus the data, model and
LoRA fields) can be set in the YAML or overridden on the command line, e.g. ``--shots 1024``,
``--output_dir runs/x`` or ``--resume true``. The work is done by
:func:`rella_hf.training.run_training`, which a notebook can call directly.
"""

import logging


def main(argv=None):
    from rella_hf.training import parse_config, run_training

    config = parse_config(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        level=logging.INFO if config.should_log else logging.WARNING)
    result = run_training(config)
    if config.process_index == 0:
        print(f"Adapter, tokenizer, training_config.json and metrics.json written to {result.output_dir}")


if __name__ == "__main__":
    main()
