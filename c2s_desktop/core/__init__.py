"""Qt-free core of C2S Desktop: data, sentences, prompts, engine, tasks, export."""
