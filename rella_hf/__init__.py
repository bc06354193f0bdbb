"""ReLLa for the Hugging Face ecosystem."""
