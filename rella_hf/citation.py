"""How to cite ReLLa: the one BibTeX entry the Hub cards and the ``ctr_metrics`` evaluate module quote.

Its own module at the bottom of the package (no imports), so any layer may read it.
"""

#: The ReLLa paper (Lin et al., The Web Conference 2024; arXiv 2308.11131), as BibTeX.
RELLA_CITATION = """@inproceedings{lin2024rella,
  title     = {ReLLa: Retrieval-enhanced Large Language Models for Lifelong Sequential Behavior Comprehension in Recommendation},
  author    = {Lin, Jianghao and Shan, Rong and Zhu, Chenxu and Du, Kounianhua and Chen, Bo and Quan, Shigang and Tang, Ruiming and Yu, Yong and Zhang, Weinan},
  booktitle = {Proceedings of the ACM Web Conference 2024},
  year      = {2024},
  eprint    = {2308.11131},
  archivePrefix = {arXiv}
}"""
